"""Services: the one place a reply is made, called by the bot, the terminal and the scheduler."""
