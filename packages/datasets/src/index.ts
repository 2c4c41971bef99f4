/** @ir2f/datasets: not implemented yet; see README.md. */
export {};
