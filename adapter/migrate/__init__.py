"""`adapter store migrate`: a store moved between key layouts (one Redis, Redis Cluster, another partition count)."""
