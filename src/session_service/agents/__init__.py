"""Agents kept in memory per active session, and the pool that holds them."""
