/** @ir2f/backbones: not implemented yet; see README.md. */
export {};
