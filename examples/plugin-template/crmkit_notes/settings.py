"""The settings a tenant gives the plugin: ``crmkit plugins enable TENANT notes --set ...``.

crmkit validates them with this model when the tenant enables or reconfigures the
plugin, so code that reads them never sees a bad value.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

NAME = "notes"
"""The plugin's name: its entry point, scope prefix, migration branch and job prefix."""


class NotesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is refused, not ignored

    max_note_length: int = Field(
        2000, ge=10, le=20000, description="Longest note body, in characters."
    )
    note_on_archive: bool = Field(
        True, description="Add a note to a customer's notes when the customer is archived."
    )
