"""The lake's contract: task catalogue, schemas, partition layout, reading and writing. No JAX."""
