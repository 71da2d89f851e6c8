-- Cold tiering: which storage class a recording's objects were moved to.
ALTER TABLE recordings ADD COLUMN storage_class text;
