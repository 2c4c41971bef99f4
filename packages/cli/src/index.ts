/** @ir2f/cli: not implemented yet; see README.md. */
export {};
