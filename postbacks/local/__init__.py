"""The local stack: embedded broker launcher and the `postbacks up` supervisor."""
