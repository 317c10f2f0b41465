"""What the bot says outside the model's replies: command answers and refusals."""

HELP = (
    "I'm here to chat, just write to me.\n\n"
    "/start - say hello\n"
    "/clear - start our relationship over, with a fresh short-term memory\n"
    "/forget - delete everything I have stored about you\n"
    "/export - get everything I have stored about you as a file\n"
    "/checkins on|off - whether I may write first after a break\n"
    "/timezone Area/City - your time zone, so I never write at night (e.g. /timezone Europe/Berlin)\n"
    "/help - this list"
)
CLEARED = "Okay, a fresh start. Hi again! What's on your mind?"
FORGET_CONFIRM = (
    "This deletes everything I have stored about you: our messages, what I remember, your settings. "
    "It cannot be undone. Are you sure?"
)
FORGET_YES = "Yes, forget me"
FORGET_NO = "No, keep it"
FORGOTTEN = "Done. I have deleted everything about you. If you write again, we start from zero."
FORGET_KEPT = "Okay, nothing was deleted."
EXPORT_CAPTION = "Everything I have stored about you, as JSON."
EXPORT_EMPTY = "I have nothing stored about you yet."
CHECKINS_ON = "Okay, I may write to you first after a break (never at night)."
CHECKINS_OFF = "Okay, I won't write first. I'm here whenever you write."
CHECKINS_USAGE = "Write /checkins on or /checkins off. Right now they are {state}."
TIMEZONE_SET = "Got it, your time zone is {zone}. It is {local} there now."
TIMEZONE_USAGE = (
    "Write your zone like this: /timezone Europe/Berlin "
    "(the list: en.wikipedia.org/wiki/List_of_tz_database_time_zones)."
)
TIMEZONE_UNKNOWN = (
    "I don't know a time zone called {zone!r}. Write it as Area/City, like Europe/Berlin or America/New_York "
    "(the list: en.wikipedia.org/wiki/List_of_tz_database_time_zones)."
)
UNKNOWN_COMMAND = "I don't know that command. /help lists what I understand."
NOT_TEXT = "I can only read text for now. Could you tell me in words?"
EMPTY_TEXT = "That message looks empty to me. What did you want to say?"
UPDATE_SET_ASIDE = (
    "Sorry, I couldn't read your last message; something in it confused me. "
    "Could you send it again, maybe in other words?"
)
