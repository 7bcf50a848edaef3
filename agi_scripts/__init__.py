"""vipsticky: Asterisk AGI scripts that put VIP callers first and route callers back to their agent."""
