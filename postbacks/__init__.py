"""Shared plumbing of postback-pipeline: settings, CLI, logging, topics and the local stack."""
