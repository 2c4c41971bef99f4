/**
 * Plugins are values, not side effects: `definePlugin` returns a factory whose options are validated by the
 * plugin's zod schema when the pipeline is composed (not later, at first use), and whose `register` binds
 * tokens in the pipeline's child container.
 */
import type { z } from 'zod';
import type { DependencyContainer } from './di.js';
import { Ir2fError } from './errors.js';

export interface Ir2fPlugin<O = unknown> {
  readonly name: string;
  /** Validated options, defaults filled in. */
  readonly options: O;
  register(container: DependencyContainer): void;
}

export interface PluginDefinition<S extends z.ZodType> {
  /** The npm package name (or another unique name) shown in errors. */
  name: string;
  options: S;
  register(container: DependencyContainer, options: z.output<S>): void;
}

export type PluginFactory<S extends z.ZodType> = ((options?: z.input<S>) => Ir2fPlugin<z.output<S>>) & {
  readonly pluginName: string;
  readonly schema: S;
};

/** zod issues as readable lines `  - a.b.c: message` (`root` names an issue on the whole value). */
export function describeIssues(issues: readonly z.core.$ZodIssue[], root = '(options)'): string {
  return issues
    .map((issue) => {
      const path = issue.path.length ? issue.path.map(String).join('.') : root;
      return `  - ${path}: ${issue.message}`;
    })
    .join('\n');
}

export function definePlugin<S extends z.ZodType>(def: PluginDefinition<S>): PluginFactory<S> {
  const factory = (options?: z.input<S>): Ir2fPlugin<z.output<S>> => {
    const parsed = def.options.safeParse(options ?? {});
    if (!parsed.success) {
      throw new Ir2fError('PLUGIN_OPTIONS',
        `invalid options for plugin '${def.name}':\n${describeIssues(parsed.error.issues)}`);
    }
    const value = parsed.data as z.output<S>;
    return Object.freeze({
      name: def.name,
      options: value,
      register: (container: DependencyContainer) => def.register(container, value),
    });
  };
  return Object.assign(factory, { pluginName: def.name, schema: def.options });
}
