"""Developer tooling: builds of the e2e control plane and the single-node cluster, and their PKI."""
