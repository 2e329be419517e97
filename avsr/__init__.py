"""avsr: unified auditory, visual and audio-visual speech recognition."""

from avsr.utils.resolvers import register_resolvers

register_resolvers()
