/** @ir2f/plugin-inr-rectifier: not implemented yet; see README.md. */
export {};
