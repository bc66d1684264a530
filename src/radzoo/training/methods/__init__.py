"""Pretraining methods: each is a composition of a ``radzoo.nets`` encoder, losses and momentum
modules, plus the function that trains it and saves what ``radzoo.load`` reads."""
