"""The Slack side: commands, views, notifications, the outbox, jobs and the server."""
