"""Benchmarks: throughput, memory and accuracy, with peers side by side."""
