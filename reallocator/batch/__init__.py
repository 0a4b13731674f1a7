"""Batch replanning: a book of campaigns from tables, with no server in the loop."""
