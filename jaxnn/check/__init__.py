"""Checking tools: the one case table and the backprop comparison."""
