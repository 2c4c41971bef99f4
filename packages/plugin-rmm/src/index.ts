/** @ir2f/plugin-rmm: not implemented yet; see README.md. */
export {};
