"""Real infrastructure for tests: Redis, Kafka, and Sluice processes.

Each backend is taken from the environment when given (SLUICE_REDIS_URL,
SLUICE_KAFKA_BOOTSTRAP), else from testcontainers when a Docker engine
answers, else started here as a local process on a free loopback port.
"""
