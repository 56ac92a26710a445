"""Helpers the tests share: real tools and services, started and stopped by pid."""
