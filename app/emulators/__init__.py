"""Emulators of the external services, speaking their real protocols over loopback HTTP.

They ship with the package because `aifriend demo` runs on them too.
"""
