/**
 * DI tokens of the extension points. `Symbol.for` keys keep tokens equal even when two copies of core end up
 * in one process (a plugin resolving its own peer copy).
 */
import type { InjectionToken } from './di.js';
import type { Backbone, DecodeHead, EventBus, Loss, Mixer, PseudoLabeler, Rectifier } from './contracts.js';

export const Tokens = {
  Backbone: Symbol.for('ir2f.Backbone') as InjectionToken<Backbone>,
  DecodeHead: Symbol.for('ir2f.DecodeHead') as InjectionToken<DecodeHead>,
  PseudoLabeler: Symbol.for('ir2f.PseudoLabeler') as InjectionToken<PseudoLabeler>,
  Rectifier: Symbol.for('ir2f.Rectifier') as InjectionToken<Rectifier>,
  Loss: Symbol.for('ir2f.Loss') as InjectionToken<Loss>,
  Mixer: Symbol.for('ir2f.Mixer') as InjectionToken<Mixer>,
  EventBus: Symbol.for('ir2f.EventBus') as InjectionToken<EventBus>,
} as const;

export type TokenName = keyof typeof Tokens;

/** Who provides each extension point, for "unbound token" errors. */
export const TOKEN_PROVIDERS: Record<TokenName, { packages: string[]; part: string }> = {
  Backbone: { packages: ['@ir2f/backbones'], part: 'backbone' },
  DecodeHead: { packages: ['@ir2f/backbones'], part: 'decodeHead' },
  PseudoLabeler: { packages: ['@ir2f/core (confidence-weighted)'], part: 'pseudoLabeler' },
  Rectifier: { packages: ['@ir2f/core (identity, confidence)', '@ir2f/plugin-inr-rectifier'], part: 'rectifier' },
  Loss: { packages: ['@ir2f/core (weighted cross-entropy)', '@ir2f/plugin-rmm'], part: 'loss' },
  Mixer: { packages: ['@ir2f/core (ClassMix)'], part: 'mixer' },
  EventBus: { packages: ['@ir2f/core'], part: 'eventBus' },
};

export function tokenName(token: InjectionToken<unknown>): string {
  for (const [name, t] of Object.entries(Tokens)) if (t === token) return name;
  if (typeof token === 'symbol') return token.description ?? token.toString();
  if (typeof token === 'function') return token.name;
  return String(token);
}
