/**
 * The replica factory of data-parallel training: a worker thread calls `buildReplica(config)` to build the
 * same models and pipeline as the main thread (the main thread then copies its state over).
 */
import { siblingModule, type Replica } from '@ir2f/core';
import type { RunConfig } from './config.js';
import { buildModels, buildPipeline } from './run-setup.js';

export async function buildReplica(config: RunConfig): Promise<Replica> {
  const { student, teacher, imnet } = await buildModels(config);
  const pipeline = await buildPipeline(config, student);
  return {
    student, teacher, numClasses: config.model.numClasses, pipeline,
    featureDistance: imnet && config.featureDistance ? { imnet, ...config.featureDistance } : undefined,
    dispose: () => imnet?.dispose(),
  };
}

/** This module, as the worker imports it (.ts when running from source). */
export const REPLICA_MODULE = siblingModule(import.meta.url, 'replica');
