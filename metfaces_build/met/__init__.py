"""The Met Collection API: client, emulator, sample collection. Imports core and infra."""
