# sdenv app image: one lock target on top of its CUDA base. Layers go from the heaviest and most
# stable (torch) to the lightest and most volatile (the env's own libraries such as diffusers, then
# sdenv itself), so a changed small pin rebuilds only the layers above it. Everything comes from
# the lock: hashes required, wheels only, no deps. Rendered by sdenv.image (placeholders between
# @ signs); build context: torch.txt, deps.txt, app.txt, sdenv.txt, the sdenv wheel, the lock.
FROM @CUDA_BASE@
ARG SDENV_TRANSPORT=@TRANSPORT@
COPY torch.txt /opt/sdenv/lock/torch.txt
RUN /opt/sdenv/venv/bin/python /opt/sdenv/bin/sdenv-install /opt/sdenv/lock/torch.txt
COPY deps.txt /opt/sdenv/lock/deps.txt
RUN /opt/sdenv/venv/bin/python /opt/sdenv/bin/sdenv-install /opt/sdenv/lock/deps.txt
COPY app.txt /opt/sdenv/lock/app.txt
RUN /opt/sdenv/venv/bin/python /opt/sdenv/bin/sdenv-install /opt/sdenv/lock/app.txt
COPY sdenv.txt @WHEEL@ /opt/sdenv/wheels/
RUN /opt/sdenv/venv/bin/python /opt/sdenv/bin/sdenv-install /opt/sdenv/wheels/sdenv.txt
COPY lock.txt /opt/sdenv/lock/@LOCK_NAME@
ENV SDENV_LOCK=/opt/sdenv/lock/@LOCK_NAME@ \
    SDENV_ENV=@ENV@ \
    SDENV_PYTHON=@PYTHON@
USER sdenv
WORKDIR /home/sdenv
ENTRYPOINT ["sdenv"]
# verify checks the installed set against the lock baked in above (its default path is relative).
CMD ["verify", "--lock", "/opt/sdenv/lock/@LOCK_NAME@"]
# Last: labels carry the git revision, which changes more often than anything above.
LABEL @LABELS@
