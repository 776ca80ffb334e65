"""Run modes: what a command does from start to end (sweep, check, resend, doctor), and the runtime they share."""
