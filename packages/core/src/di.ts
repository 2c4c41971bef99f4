/**
 * tsyringe, with its Reflect polyfill loaded first. ir2f injects by explicit token (`@inject(Tokens.X)`)
 * and never relies on emitted decorator metadata, so any TypeScript transpiler works.
 */
import 'reflect-metadata';

export { container, inject, injectable, instanceCachingFactory, singleton, Lifecycle } from 'tsyringe';
export type { DependencyContainer, InjectionToken } from 'tsyringe';
