/**
 * The plugin value: binds the `Rectifier` token to an INR rectifier sized from the pipeline's decode head
 * (embedding channels, classes), reporting on the pipeline's event bus.
 */
import { definePlugin, instanceCachingFactory, Tokens } from '@ir2f/core';
import { InrOptionsSchema, InrRectifier } from './inr-rectifier.js';

export const inrRectifier = definePlugin({
  name: '@ir2f/plugin-inr-rectifier',
  options: InrOptionsSchema,
  register(container, options) {
    // one rectifier per pipeline: its variables are trained and checkpointed
    container.register(Tokens.Rectifier, {
      useFactory: instanceCachingFactory((c) => {
        const head = c.resolve(Tokens.DecodeHead);
        return new InrRectifier(options, { embeddingChannels: head.embeddingChannels, numClasses: head.numClasses }, c.resolve(Tokens.EventBus));
      }),
    });
  },
});
