"""Everything JAX: environments, the Sable network, online and offline training, evaluation."""
