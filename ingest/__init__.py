"""Ingest: the HTTP service that authenticates and validates postbacks and clicks and puts them in Kafka."""
