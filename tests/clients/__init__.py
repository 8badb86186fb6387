"""Real clients end to end: Codex CLI, the OpenAI Agents SDK and the openai SDK
against the proxy (gunicorn, 2 workers) in front of the scripted mock backend."""
