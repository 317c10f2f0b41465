"""What the bot says outside the model's replies: command answers and refusals."""

HELP = (
    "I'm here to chat, just write to me.\n\n"
    "/start - say hello\n"
    "/clear - start our relationship over, with a fresh short-term memory\n"
    "/memory - what I remember about you\n"
    "/memory forget WORDS - make me forget what mentions those words (e.g. /memory forget pizza)\n"
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
MEMORY_EMPTY = (
    "I haven't written anything down about you yet; we've only just started. Tell me about yourself and I'll remember."
)
MEMORY_HEADING = "Here is what I remember about you."
MEMORY_NOTEBOOK = "My notes:\n{notebook}"
MEMORY_DAYS = "Our recent days:"
MEMORY_RECALL = "And when something comes up again, I can look back at {count} things you told me."
MEMORY_FOOTER = (
    "To make me forget something: /memory forget WORDS (e.g. /memory forget pizza). To delete everything: /forget."
)
MEMORY_USAGE = "Write /memory to see what I remember, or /memory forget WORDS to make me forget something."
MEMORY_FORGET_USAGE = "Tell me what to forget, like this: /memory forget pizza"
MEMORY_FORGET_TOO_COMMON = (
    "Those words are too common for me to look for. Name something specific, like /memory forget pizza."
)
MEMORY_FORGET_CONFIRM = (
    "Forget everything that mentions \u201c{words}\u201d? I'll remove it from my notes and won't bring up "
    "those messages again. (/forget deletes everything instead.)"
)
MEMORY_FORGET_YES = "Yes, forget it"
MEMORY_FORGET_NO = "No, keep it"
MEMORY_FORGOTTEN = (
    "Done, I've forgotten what mentioned \u201c{words}\u201d ({messages} messages, {lines} lines of my notes)."
)
MEMORY_NOTHING_FOUND = "I looked, and nothing I remember mentions \u201c{words}\u201d."
MEMORY_KEPT = "Okay, I'll keep remembering it."
