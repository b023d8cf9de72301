# sdenv CUDA base: OS + Python + the CUDA user-space wheels (nvidia-*) that a lock pins, installed
# once into /opt/sdenv/venv and shared by every app image of one (CUDA variant, Python, OS).
# No nvidia/cuda image underneath: torch's wheels already carry CUDA, a second copy is dead weight.
# Rendered by sdenv.image (placeholders between @ signs); build context: sdenv-install, cuda.txt.
FROM @BASE_IMAGE@
# Where sdenv-install fetches transport settings (CA bundle, index URLs) during a RUN; see there.
ARG SDENV_TRANSPORT=@TRANSPORT@
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    LANG=C.UTF-8 \
    VIRTUAL_ENV=/opt/sdenv/venv \
    PATH=/opt/sdenv/venv/bin:$PATH
RUN python3 -m venv /opt/sdenv/venv \
 && useradd --create-home --uid 10001 --user-group --shell /bin/sh sdenv
COPY sdenv-install /opt/sdenv/bin/sdenv-install
COPY cuda.txt /opt/sdenv/lock/cuda.txt
RUN /opt/sdenv/venv/bin/python /opt/sdenv/bin/sdenv-install /opt/sdenv/lock/cuda.txt
LABEL @LABELS@
