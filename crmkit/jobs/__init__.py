"""Background work: the job queue (arq or in-process), the outbox relay, cron."""
