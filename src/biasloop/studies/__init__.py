"""The registered studies: one module each, registering a :class:`~biasloop.studies.base.Study`.

``scpl`` (the self-consuming performative loop) and ``inheritance`` (bias
inheritance) are built in; a plug-in adds a study by registering one in
:data:`~biasloop.studies.base.STUDIES`. The registry finds the modules of this
package by itself, so a new built-in study is one new module here.
"""
