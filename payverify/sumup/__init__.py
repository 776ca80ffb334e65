"""Talking to SumUp: the HTTP client, the checkout model, and what an answer means."""
