"""Mail: outbox rows rendered from templates, built into messages with their tickets, sent over SMTP."""
