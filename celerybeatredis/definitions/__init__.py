"""What an entry is: its definition document, the schedule kinds and members it may have, read and checked."""
