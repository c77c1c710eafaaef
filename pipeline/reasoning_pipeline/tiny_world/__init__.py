"""The tiny world: a locally trained tokenizer, teacher and student on procedurally generated problems."""
