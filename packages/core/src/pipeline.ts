/**
 * `createPipeline` composes a child tsyringe container in which each extension-point token is bound once:
 * core defaults, then plugins (two plugins binding one token is an error), then the explicit parts passed
 * by the user, which override anything. Missing required tokens fail here, naming who provides them.
 */
import type { Observable } from 'rxjs';
import type {
  Backbone, DecodeHead, EventBus, Loss, Mixer, PseudoLabeler, Rectifier,
} from './contracts.js';
import { container as rootContainer, Lifecycle, type DependencyContainer, type InjectionToken } from './di.js';
import { Ir2fError } from './errors.js';
import { RxEventBus, type Ir2fEvent } from './events.js';
import type { Ir2fPlugin } from './plugin.js';
import { ClassMix } from './defaults/mixer-classmix.js';
import { WeightedCrossEntropy } from './defaults/loss-weighted-ce.js';
import { ConfidencePseudoLabeler } from './defaults/pseudo-labeler-confidence.js';
import { IdentityRectifier } from './rectifier-identity.js';
import { TOKEN_PROVIDERS, Tokens, tokenName, type TokenName } from './tokens.js';

/** A class whose instances are T (for `useClass` bindings). */
export type Constructor<T> = new (...args: never[]) => T;

/** A part: an instance, or a provider resolved in the pipeline's container (one instance per pipeline). */
export type Binding<T> =
  | T
  | { useValue: T }
  | { useClass: Constructor<T> }
  | { useFactory: (c: DependencyContainer) => T };

export interface PipelineParts {
  backbone?: Binding<Backbone>;
  decodeHead?: Binding<DecodeHead>;
  pseudoLabeler?: Binding<PseudoLabeler>;
  rectifier?: Binding<Rectifier>;
  loss?: Binding<Loss>;
  mixer?: Binding<Mixer>;
  eventBus?: Binding<EventBus>;
}

export interface PipelineOptions extends PipelineParts {
  plugins?: readonly Ir2fPlugin[];
  /** Container to derive from (default: tsyringe's root container). */
  parent?: DependencyContainer;
  /** Tokens that must be bound (default: every extension point). */
  require?: readonly TokenName[];
}

export interface Pipeline {
  readonly container: DependencyContainer;
  readonly plugins: readonly string[];
  resolve<T>(token: InjectionToken<T>): T;
  readonly events$: Observable<Ir2fEvent>;
  dispose(): Promise<void>;
}

const PART_TOKENS: Record<keyof PipelineParts, TokenName> = {
  backbone: 'Backbone',
  decodeHead: 'DecodeHead',
  pseudoLabeler: 'PseudoLabeler',
  rectifier: 'Rectifier',
  loss: 'Loss',
  mixer: 'Mixer',
  eventBus: 'EventBus',
};

const REGISTER_METHODS = new Set(['register', 'registerSingleton', 'registerInstance', 'registerType']);

function isProvider(b: object): boolean {
  return 'useValue' in b || 'useClass' in b || 'useFactory' in b;
}

function bind<T>(c: DependencyContainer, token: InjectionToken<T>, binding: Binding<T>): void {
  const b = binding as object;
  if (typeof b !== 'object' || b === null || !isProvider(b)) {
    c.registerInstance(token, binding as T);
  } else if ('useValue' in b) {
    c.registerInstance(token, (b as { useValue: T }).useValue);
  } else if ('useClass' in b) {
    c.register(token, { useClass: (b as { useClass: Constructor<T> }).useClass as never },
      { lifecycle: Lifecycle.ContainerScoped });
  } else {
    let cached: { value: T } | undefined;
    const factory = (b as { useFactory: (c: DependencyContainer) => T }).useFactory;
    c.register(token, { useFactory: (inner) => (cached ??= { value: factory(inner) }).value });
  }
}

/** A view of `c` that records which tokens a plugin binds. */
function recording(c: DependencyContainer, onBind: (token: InjectionToken<unknown>) => void): DependencyContainer {
  return new Proxy(c, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof prop === 'string' && REGISTER_METHODS.has(prop) && typeof value === 'function') {
        return (token: InjectionToken<unknown>, ...rest: unknown[]) => {
          onBind(token);
          (value as (...a: unknown[]) => unknown).call(target, token, ...rest);
          return receiver;
        };
      }
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

export function createPipeline(options: PipelineOptions = {}): Pipeline {
  const c = (options.parent ?? rootContainer).createChildContainer();

  // core defaults: the DAFormer baseline of DESIGN §4.1 (ClassMix reads K from the decode head)
  const scoped = { lifecycle: Lifecycle.ContainerScoped };
  c.register(Tokens.EventBus, { useClass: RxEventBus }, scoped);
  c.register(Tokens.Rectifier, { useClass: IdentityRectifier }, scoped);
  c.register(Tokens.PseudoLabeler, { useClass: ConfidencePseudoLabeler }, scoped);
  c.register(Tokens.Loss, { useClass: WeightedCrossEntropy }, scoped);
  bind(c, Tokens.Mixer, { useFactory: (inner) => new ClassMix({ numClasses: inner.resolve(Tokens.DecodeHead).numClasses }) });

  const boundBy = new Map<InjectionToken<unknown>, string>();
  const names: string[] = [];
  for (const plugin of options.plugins ?? []) {
    if (plugin == null || typeof plugin.register !== 'function') {
      throw new Ir2fError('INVALID_ARGUMENT',
        'createPipeline: plugins must be plugin values, e.g. plugins: [inrRectifier({ ... })] (call the factory)');
    }
    const seenHere = new Set<InjectionToken<unknown>>();
    plugin.register(recording(c, (token) => {
      const other = boundBy.get(token);
      if (other != null && !seenHere.has(token)) {
        throw new Ir2fError('PLUGIN_CONFLICT',
          `token ${tokenName(token)} is bound by two plugins: '${other}' and '${plugin.name}'. ` +
          `Keep one of them, or drop both and pass your choice as a part of createPipeline.`);
      }
      seenHere.add(token);
      boundBy.set(token, plugin.name);
    }));
    names.push(plugin.name);
  }

  for (const [part, name] of Object.entries(PART_TOKENS) as [keyof PipelineParts, TokenName][]) {
    const binding = options[part];
    if (binding !== undefined) bind(c, Tokens[name] as InjectionToken<unknown>, binding as Binding<unknown>);
  }

  const required = options.require ?? (Object.keys(Tokens) as TokenName[]);
  for (const name of required) {
    if (!(name in Tokens)) {
      throw new Ir2fError('INVALID_ARGUMENT', `createPipeline: unknown token '${name}' in require; ` +
        `valid: ${Object.keys(Tokens).join(', ')}`);
    }
    if (!c.isRegistered(Tokens[name] as InjectionToken<unknown>, true)) {
      const p = TOKEN_PROVIDERS[name];
      throw new Ir2fError('UNBOUND_TOKEN',
        `no binding for token ${name}: it is provided by ${p.packages.join(' or ')}; install one and add its ` +
        `plugin, or pass createPipeline({ ${p.part}: ... })`);
    }
  }

  const bus = c.resolve(Tokens.EventBus);
  // tsyringe disposes only what it constructed from a class: a plugin's factory-made part (the INR rectifier's
  // variables) is disposed here, once it has been resolved through the pipeline
  const resolved = new Set<{ dispose(): unknown }>();
  return {
    container: c,
    plugins: names,
    resolve: <T>(token: InjectionToken<T>) => {
      const part = c.resolve(token);
      if (typeof (part as { dispose?: unknown } | undefined)?.dispose === 'function') resolved.add(part as { dispose(): unknown });
      return part;
    },
    events$: bus.events$,
    async dispose() {
      bus.complete();
      for (const part of resolved) await part.dispose();
      await c.dispose();
    },
  };
}
