"""The one chat model a process shares, built from settings."""
