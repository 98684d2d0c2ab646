"""Stream: Faust agents that deduplicate, attribute and enrich postbacks (issue: stream stage)."""
