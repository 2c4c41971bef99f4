/** The plugin value: binds the `Loss` token to the RMM loss, reporting on the pipeline's event bus. */
import { definePlugin, instanceCachingFactory, Tokens } from '@ir2f/core';
import { RmmLoss, RmmOptionsSchema } from './rmm.js';

export const rmm = definePlugin({
  name: '@ir2f/plugin-rmm',
  options: RmmOptionsSchema,
  register(container, options) {
    container.register(Tokens.Loss, { useFactory: instanceCachingFactory((c) => new RmmLoss(options, c.resolve(Tokens.EventBus))) });
  },
});
