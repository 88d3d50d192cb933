"""The built-in viewer: OHIF from the npm registry (:mod:`.install`), served at ``/viewer/``
(:mod:`.serve`)."""
