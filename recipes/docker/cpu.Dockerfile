# syntax=docker/dockerfile:1
# llama.cpp for buildtool's cpu family. The build context is what `buildtool build --artifact
# image --emit DIR` (or `buildtool bake`) writes: recipes/cmake, the pinned llama.cpp tree and
# targets/<target>/defines.cmake — the target's resolved CMake definitions, the same ones its
# tarball and wheel are built with — which CMake loads as its initial cache (-C).
ARG BUILD_IMAGE=ubuntu:24.04
ARG RUNTIME_IMAGE=ubuntu:24.04

# BUILT: where the runtime stage takes the programs from. "build" compiles them in the build
# stage below (`buildtool bake`, `buildtool build --emit`: Docker is all it needs);
# "prebuilt" packages the files `buildtool build --artifact image` compiled once for the
# tarball and the wheel too (the context's prebuilt/bin and prebuilt/licenses), so that the
# image holds the tarball's very bytes. podman and buildah need it given (--build-arg).
ARG BUILT=build

FROM ${BUILD_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# arm64: ggml's armv9.2 CPU variants need a compiler that knows -march=...+sme (GCC 14;
# Ubuntu 24.04 has it), as llama.cpp's own arm64 release build does
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ cmake ninja-build ccache \
 && if [ "$(uname -m)" = aarch64 ]; then \
      apt-get install -y --no-install-recommends gcc-14 g++-14 \
      && ln -sf /usr/bin/gcc-14 /usr/local/bin/cc && ln -sf /usr/bin/g++-14 /usr/local/bin/c++; \
    fi \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
ARG BUILDTOOL_TARGET=cpu
COPY CMakeLists.txt ship.cmake /src/
COPY llama.cpp /src/llama.cpp
COPY targets/${BUILDTOOL_TARGET}/defines.cmake /src/defines.cmake
ENV CCACHE_DIR=/root/.cache/ccache
# the shared compile cache (README, "The shared compile cache"): its URL comes as a build
# secret (`docker buildx bake`: $BUILDTOOL_COMPILE_CACHE), never as a build argument,
# which the image's history would keep; none given, the local cache mount alone
ARG COMPILE_CACHE_READ_ONLY=
RUN --mount=type=cache,id=buildtool-ccache-cpu,target=/root/.cache/ccache \
    --mount=type=secret,id=compile-cache \
    if [ -s /run/secrets/compile-cache ]; then \
      CCACHE_REMOTE_STORAGE="$(cat /run/secrets/compile-cache)${COMPILE_CACHE_READ_ONLY:+|read-only=true}"; \
      export CCACHE_REMOTE_STORAGE; \
    fi \
 && cmake -S /src -B /build -G Ninja -C /src/defines.cmake -DBUILDTOOL_DESTINATION=bin \
      -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
 && cmake --build /build --target buildtool_programs \
 && cmake --install /build --component buildtool --prefix /out

FROM scratch AS prebuilt
COPY prebuilt/ /out/

FROM ${BUILT} AS built

FROM ${RUNTIME_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /home/llama \
      --shell /usr/sbin/nologin llama
# every setting in the runtime stage, before the programs: it stays cached (in the
# engine, and as buildtool's runtime base) while the programs change
ENV PATH=/opt/llama.cpp:$PATH LLAMA_ARG_HOST=0.0.0.0 LLAMA_ARG_PORT=8080
USER 10001
WORKDIR /home/llama
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
ENTRYPOINT ["/opt/llama.cpp/llama-server"]

# The last stage only copies files in and labels the image: `buildtool build --artifact
# image` applies it itself to the runtime stage the engine built (README, "Images"); an
# instruction other than ARG, COPY and LABEL here makes the engine build it.
FROM runtime
COPY --from=built /out/bin/ /opt/llama.cpp/
ARG BUILDTOOL_TARGET=cpu
COPY targets/${BUILDTOOL_TARGET}/manifest.json /opt/llama.cpp/manifest.json
# Labels last: they change with every build (created) and must not invalidate the layers.
ARG LLAMA_CPP_VERSION=unknown
ARG LLAMA_CPP_COMMIT=unknown
ARG BUILD_KEY=unknown
ARG CREATED=unknown
ARG RUNTIME_IMAGE
LABEL org.opencontainers.image.title="llama.cpp (${BUILDTOOL_TARGET})" \
      org.opencontainers.image.description="llama.cpp server and tools, built by buildtool for ${BUILDTOOL_TARGET}" \
      org.opencontainers.image.version="${LLAMA_CPP_VERSION}" \
      org.opencontainers.image.revision="${LLAMA_CPP_COMMIT}" \
      org.opencontainers.image.source="https://github.com/ggml-org/llama.cpp" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}" \
      dev.buildtool.target="${BUILDTOOL_TARGET}" \
      dev.buildtool.build-key="${BUILD_KEY}" \
      dev.buildtool.manifest="/opt/llama.cpp/manifest.json"
