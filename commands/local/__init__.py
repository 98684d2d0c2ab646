"""The local stack: the Apache Kafka launcher (and its installer) and the `postbacks up` supervisor."""
