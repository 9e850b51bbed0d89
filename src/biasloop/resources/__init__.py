"""Shared resources below every study: packaged files, word lists, names and cue matching.

* :mod:`~biasloop.resources.files`: where packaged data and third-party benchmark data live;
* :mod:`~biasloop.resources.lexicons`: gender terms and the adjective lexicon;
* :mod:`~biasloop.resources.names`: first names by gender and culture;
* :mod:`~biasloop.resources.cues`: sensitive cues (gendered words, names, culture terms)
  found and replaced in text, a registry of lexicons.

Tasks, the inheritance study, mitigations and the analysis all read them; nothing
here imports a study.
"""
