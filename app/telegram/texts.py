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
    "/usage - how much we can talk right now\n"
    "/reminders - the plans and reminders coming up, to cancel any\n"
    "/help - this list"
)
ADMIN_HELP = (
    "\n\nFor operators:\n"
    "/invite [USES] [VALID] - an invite link, e.g. /invite 5 2d (default: 1 use, 7d)\n"
    "/allow USER_ID - let a user talk\n"
    "/block USER_ID - stop answering a user, silently\n"
    "/pending - users waiting for approval, with buttons\n"
    "/limit USER_ID REPLIES_PER_MINUTE TOKENS_PER_DAY - a user's own limits (- for the default, 0 for none)\n"
    "/inspect CHAT_ID - one conversation\n"
    "/stats - all conversations"
)
INVITE_USAGE = "Usage: /invite [USES] [VALID], e.g. /invite 5 2d (USES 1 to 1000; VALID like 12h or 7d, at most 365d)."
INVITE_LINK = "An invite for {uses} {people}, valid until {until} UTC:\n{link}\n\nIt is shown only this once."
USER_ID_USAGE = "Usage: /{command} USER_ID (a Telegram user id, a number)."
ALLOWED = "User {user_id} may talk now; what they wrote meanwhile will be answered."
BLOCKED = "User {user_id} is blocked: their messages are kept, and they get nothing."
APPROVED = "\n\nApproved: user {user_id} may talk now."
REFUSED = "\n\nRefused: user {user_id} was told, kindly."
NOBODY_PENDING = "Nobody is waiting for approval."
PENDING_HEADING = "Waiting for approval (oldest first):"
LIMIT_USAGE = (
    "Usage: /limit USER_ID REPLIES_PER_MINUTE TOKENS_PER_DAY, e.g. /limit 12345 40 50000 "
    "(- keeps the default, 0 means no limit)."
)
LIMIT_SET = "User {user_id}: {replies} replies a minute, {tokens} tokens a day."
CODE_WRONG = (
    "That invite code doesn't work: it may be mistyped, used up or expired. Ask whoever invited you for a new link."
)
CODE_TOO_MANY = "Too many wrong codes. You can try again at {until} UTC."
CODE_BUSY = "Lots of codes are being tried right now. Please try again in a minute."
USAGE = (
    "Replies: {replies}.\nModel tokens today: {tokens}.\n"
    "Your day starts again at {midnight} ({zone}; /timezone sets yours)."
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
REMINDERS_HEADING = "Coming up:"
REMINDERS_EMPTY = (
    "Nothing coming up. Tell me about your plans, or ask me like this: remind me tomorrow at 9 to call mom."
)
REMINDER_LINE = "{n}. {when}: I'll remind you: {what}"
PLAN_LINE = "{n}. {when}: {what} (I'll ask you how it went)"
CANCEL_BUTTON = "Cancel {n}"
CANCELLED = "Cancelled: {what}"
NOTHING_TO_CANCEL = "That one is not coming up any more."
