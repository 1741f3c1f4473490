// Written by `cyclekit export --web`: translates an image in the browser with onnxruntime-web.
//
// Everything the pre- and post-processing needs comes from cyclekit-web.json, which holds each
// model's ONNX metadata_props as `cyclekit export` wrote them (onnxruntime-web cannot read custom
// metadata). The steps are those of `cyclekit translate` (and scripts/onnx_translate.py):
//   x = (pixel / 255 - mean) / std, channel-first, 1 or 3 channels (RGB -> luma for a grey model);
//   the bottom/right edges reflect-padded up to a multiple of size_multiple (at least min_size),
//   as numpy's "reflect" does; the output cropped back and mapped to pixels with
//   round-half-to-even and clipping. Fully transparent pixels are made white before the model and
//   the alpha channel is carried over unchanged; a grey image (all pixels R = G = B) comes back grey.
// Images with a side over `max_side` are scaled down first (the page says so). As `cyclekit
// translate` does, the page warns when an image is far larger than the model's training scale
// (its shorter side over `far_larger` times the metadata's load_size, else train_size).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = { config: null, sessions: new Map(), image: null, running: false, again: false, result: null };

  function setStatus(text, error) {
    const el = $("status");
    el.textContent = text;
    el.className = error ? "error" : "";
  }

  function fail(text) {
    setStatus(text, true);
    document.body.dataset.state = "error";
  }

  function describe(err) {
    const text = err && err.message ? err.message : String(err);
    return text.split("\n")[0].slice(0, 300);
  }

  // --- the model's numbers, from its metadata --------------------------------------------------

  function modelInfo(entry) {
    const meta = entry.metadata;
    const number = (key, fallback) => {
      const raw = meta[key];
      const value = raw === undefined || raw === "" ? fallback : Number(JSON.parse(raw));
      if (!Number.isFinite(value)) throw new Error(`${entry.file}: metadata ${key} is not a number`);
      return value;
    };
    const channels = number("channels", 3);
    const multiple = number("size_multiple", 1);
    const info = {
      channels,
      mean: number("mean", 0.5),
      std: number("std", 0.5),
      multiple,
      // as cyclekit translate: at least min_size (files from cyclekit 0.1: twice the multiple), and
      // never below the multiple itself
      minSize: Math.max(number("min_size", 2 * multiple), multiple),
      source: meta.source_domain || "source",
      target: meta.target_domain || "target",
      // the side training images were resized to (as cyclekit translate: load_size, else the
      // crop size); 0: unknown (a model from an older cyclekit)
      trainScale: number("load_size", 0) || number("train_size", 0),
    };
    if (channels !== 1 && channels !== 3) throw new Error(`${entry.file}: channels must be 1 or 3, got ${channels}`);
    if (info.std === 0 || multiple < 1 || !Number.isInteger(multiple)) {
      throw new Error(`${entry.file}: bad std or size_multiple in its metadata`);
    }
    return info;
  }

  // --- pre- and post-processing ----------------------------------------------------------------

  // numpy's np.pad(mode="reflect") index: mirror without repeating the edge, again and again for a
  // pad longer than the side; a side of 1 px repeats its one pixel.
  function reflectIndex(i, n) {
    if (i < n) return i;
    if (n === 1) return 0;
    const period = 2 * (n - 1);
    const k = i % period;
    return k < n ? k : period - k;
  }

  function paddedSide(n, info) {
    return Math.max(info.minSize, Math.ceil(n / info.multiple) * info.multiple);
  }

  // RGBA bytes (w x h) -> float32 1 x C x H x W, reflect-padded.
  function preprocess(rgba, w, h, info) {
    const H = paddedSide(h, info);
    const W = paddedSide(w, info);
    const C = info.channels;
    const plane = H * W;
    const x = new Float32Array(C * plane);
    const scale = 1 / (255 * info.std);
    const shift = info.mean / info.std;
    const cols = Int32Array.from({ length: W }, (_, i) => reflectIndex(i, w));
    for (let Y = 0; Y < H; Y++) {
      const row = reflectIndex(Y, h) * w;
      for (let X = 0; X < W; X++) {
        const i = (row + cols[X]) * 4;
        const white = rgba[i + 3] === 0; // a fully transparent pixel's colour is arbitrary
        const r = (white ? 255 : rgba[i]) * scale - shift;
        const g = (white ? 255 : rgba[i + 1]) * scale - shift;
        const b = (white ? 255 : rgba[i + 2]) * scale - shift;
        const o = Y * W + X;
        if (C === 3) {
          x[o] = r;
          x[plane + o] = g;
          x[2 * plane + o] = b;
        } else {
          x[o] = 0.299 * r + 0.587 * g + 0.114 * b;
        }
      }
    }
    return { data: x, dims: [1, C, H, W] };
  }

  function rint(v) {
    // numpy's rint: halves go to the even neighbour
    const r = Math.round(v);
    return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  // float32 1 x C x H x W output -> RGBA bytes (w x h), the padding cropped off.
  function postprocess(y, dims, rgba, w, h, info, grey) {
    const [, C, H, W] = dims;
    const plane = H * W;
    const out = new Uint8ClampedArray(w * h * 4);
    const a = 255 * info.std;
    const b = 255 * info.mean;
    const level = (v) => Math.min(255, Math.max(0, rint(v * a + b)));
    for (let Y = 0; Y < h; Y++) {
      for (let X = 0; X < w; X++) {
        const s = Y * W + X;
        const o = (Y * w + X) * 4;
        if (C === 1 || grey) {
          const v = C === 1 ? y[s] : 0.299 * y[s] + 0.587 * y[plane + s] + 0.114 * y[2 * plane + s];
          out[o] = out[o + 1] = out[o + 2] = level(v);
        } else {
          out[o] = level(y[s]);
          out[o + 1] = level(y[plane + s]);
          out[o + 2] = level(y[2 * plane + s]);
        }
        out[o + 3] = rgba[o + 3];
      }
    }
    return out;
  }

  function isGrey(rgba) {
    for (let i = 0; i < rgba.length; i += 4) {
      if (rgba[i] !== rgba[i + 1] || rgba[i] !== rgba[i + 2]) return false;
    }
    return true;
  }

  // --- onnxruntime-web ---------------------------------------------------------------------------

  async function hasWebGPU() {
    if (!state.config.onnxruntime_web.webgpu || !navigator.gpu) return false;
    try {
      return Boolean(await navigator.gpu.requestAdapter());
    } catch {
      return false;
    }
  }

  async function createSession(entry) {
    const url = new URL(entry.file, location.href).href;
    const wanted = new URLSearchParams(location.search).get("backend"); // ?backend=wasm forces WebAssembly
    if (wanted !== "wasm" && (await hasWebGPU())) {
      try {
        const session = await ort.InferenceSession.create(url, { executionProviders: ["webgpu"] });
        return { session, backend: "WebGPU" };
      } catch (err) {
        console.warn(`WebGPU could not run ${entry.file}; using WebAssembly:`, err);
      }
    }
    const session = await ort.InferenceSession.create(url, { executionProviders: ["wasm"] });
    return { session, backend: "WebAssembly" };
  }

  function session(entry) {
    if (!state.sessions.has(entry.file)) {
      const pending = createSession(entry);
      pending.catch(() => state.sessions.delete(entry.file)); // a later try starts afresh
      state.sessions.set(entry.file, pending);
    }
    return state.sessions.get(entry.file);
  }

  // --- the page ----------------------------------------------------------------------------------

  function currentEntry() {
    const checked = document.querySelector('#directions input:checked');
    return state.config.models[checked ? Number(checked.value) : 0];
  }

  function showCanvas(canvas, empty) {
    canvas.hidden = false;
    empty.hidden = true;
    const frame = canvas.parentElement;
    const s = Math.min(frame.clientWidth / canvas.width, frame.clientHeight / canvas.height);
    canvas.style.width = `${canvas.width * s}px`;
    canvas.style.height = `${canvas.height * s}px`;
    canvas.classList.toggle("up", s > 1);
  }

  function fitCanvases() {
    for (const [c, e] of [["input", "input-empty"], ["output", "output-empty"]]) {
      if (!$(c).hidden) showCanvas($(c), $(e));
    }
  }

  async function loadImage(file) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, {
        imageOrientation: "from-image", // the EXIF rotation, as cyclekit translate applies it
        premultiplyAlpha: "none",
        colorSpaceConversion: "none", // the stored values, as Pillow reads them
      });
    } catch {
      fail(`${file.name}: not an image this browser can read`);
      return;
    }
    const cap = state.config.max_side;
    const w0 = bitmap.width;
    const h0 = bitmap.height;
    let w = w0;
    let h = h0;
    if (Math.max(w0, h0) > cap) {
      const s = cap / Math.max(w0, h0);
      w = Math.max(1, Math.round(w0 * s));
      h = Math.max(1, Math.round(h0 * s));
    }
    const canvas = $("input");
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.clearRect(0, 0, w, h);
    ctx.drawImage(bitmap, 0, 0, w, h);
    bitmap.close();
    const pixels = ctx.getImageData(0, 0, w, h);
    state.image = { name: file.name, w, h, w0, h0, rgba: pixels.data, grey: isGrey(pixels.data) };
    showCanvas(canvas, $("input-empty"));
    const scaled = $("scaled");
    scaled.hidden = w === w0 && h === h0;
    scaled.textContent = scaled.hidden
      ? ""
      : `${file.name} is ${w0} \u00d7 ${h0} px: scaled down to ${w} \u00d7 ${h} px (this page's cap is ${cap} px on the long side).`;
    await translate();
  }

  async function translate() {
    if (!state.image) return;
    if (state.running) {
      state.again = true; // another image or direction came in: run once more when this one ends
      return;
    }
    state.running = true;
    try {
      do {
        state.again = false;
        await translateOnce();
      } while (state.again);
    } catch (err) {
      fail(`translation failed: ${describe(err)}`);
    } finally {
      state.running = false;
    }
  }

  async function translateOnce() {
    const image = state.image;
    const entry = currentEntry();
    const info = modelInfo(entry);
    document.body.dataset.state = "running";
    $("download").disabled = true;
    showLarge(image, info, entry);
    setStatus(`loading ${entry.file}\u2026`);
    const { session: sess, backend } = await session(entry);
    setStatus(`translating ${image.w} \u00d7 ${image.h} px on ${backend}\u2026`);
    const x = preprocess(image.rgba, image.w, image.h, info);
    const input = new ort.Tensor("float32", x.data, x.dims);
    const t0 = performance.now();
    const outputs = await sess.run({ [sess.inputNames[0]]: input });
    const ms = performance.now() - t0;
    const y = outputs[sess.outputNames[0]];
    const rgba = postprocess(y.data, y.dims, image.rgba, image.w, image.h, info, image.grey && y.dims[1] === 3);
    if (y.dispose) y.dispose();
    if (state.again) return; // superseded: its result is not shown
    const canvas = $("output");
    canvas.width = image.w;
    canvas.height = image.h;
    canvas.getContext("2d", { willReadFrequently: true }).putImageData(new ImageData(rgba, image.w, image.h), 0, 0);
    showCanvas(canvas, $("output-empty"));
    const stem = image.name.replace(/\.[^.]*$/, "") || "image";
    state.result = { name: `${stem}_to_${info.target}.png`.replace(/[\\/:*?"<>|]+/g, "_") };
    $("input-caption").innerHTML = "";
    $("input-caption").append(bold(info.source), ` input \u00b7 ${image.name} \u00b7 ${image.w} \u00d7 ${image.h} px`);
    $("output-caption").innerHTML = "";
    $("output-caption").append(bold(info.target), ` output \u00b7 ${entry.file} \u00b7 ${Math.round(ms)} ms`);
    setStatus(`translated ${info.source} \u2192 ${info.target}: ${image.w} \u00d7 ${image.h} px on ${backend} in ${Math.round(ms)} ms`);
    $("download").disabled = false;
    canvas.dataset.direction = entry.direction;
    canvas.dataset.backend = backend;
    document.body.dataset.state = "done";
  }

  // The warning of `cyclekit translate` for images far above the training scale.
  function showLarge(image, info, entry) {
    const large = $("large");
    const far = Number(state.config.far_larger) || 2;
    large.hidden = !(info.trainScale > 0 && Math.min(image.w, image.h) > far * info.trainScale);
    large.textContent = large.hidden
      ? ""
      : `${image.name} is ${image.w} \u00d7 ${image.h} px, far larger than the ${info.trainScale} px ` +
        `${entry.file} was trained at: the model sees details at a scale it never learned. ` +
        `For a truer translation, scale the image down to about ${info.trainScale} px on its shorter side first.`;
  }

  function bold(text) {
    const b = document.createElement("b");
    b.textContent = text;
    return b;
  }

  function download() {
    if (!state.result) return;
    $("output").toBlob((blob) => {
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = state.result.name;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    }, "image/png");
  }

  function buildDirections(models) {
    const box = $("directions");
    models.forEach((entry, k) => {
      const info = modelInfo(entry);
      const label = document.createElement("label");
      const radio = document.createElement("input");
      radio.type = "radio";
      radio.name = "direction";
      radio.value = String(k);
      radio.checked = k === 0;
      radio.dataset.direction = entry.direction;
      radio.addEventListener("change", () => translate());
      label.append(radio, `${info.source} \u2192 ${info.target}`);
      label.title = `${entry.file} (${entry.direction}, ${entry.precision})`;
      box.append(label);
    });
  }

  async function main() {
    if (location.protocol === "file:") {
      fail(
        "Opened as a file, this page cannot load its model. Serve its folder, e.g. " +
          "`python -m http.server -d FOLDER`, and open http://localhost:8000/"
      );
      return;
    }
    try {
      const response = await fetch("cyclekit-web.json", { cache: "no-cache" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      state.config = await response.json();
    } catch (err) {
      fail(`cannot load cyclekit-web.json: ${describe(err)}`);
      return;
    }
    const rt = state.config.onnxruntime_web;
    if (typeof ort === "undefined") {
      fail(
        rt.source === "cdn"
          ? `onnxruntime-web did not load from ${rt.script} (offline? export without --cdn for a copy next to this page)`
          : `onnxruntime-web did not load: ${rt.script} is missing next to this page (export the page again)`
      );
      return;
    }
    ort.env.wasm.wasmPaths = new URL(rt.wasm_paths, location.href).href;
    // Threads need a cross-origin isolated page (COOP/COEP headers); otherwise one thread.
    ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    ort.env.logLevel = "error";
    try {
      buildDirections(state.config.models);
    } catch (err) {
      fail(describe(err));
      return;
    }
    const cap = state.config.max_side;
    const where = rt.source === "cdn" ? "the jsDelivr CDN" : "a copy next to this page";
    $("note").textContent =
      `Images keep their size up to ${cap} px on the long side; larger ones are scaled down to ${cap} px. ` +
      `onnxruntime-web ${rt.version} from ${where}, on WebGPU where the browser offers it, else WebAssembly. ` +
      `Exported by cyclekit ${state.config.cyclekit_version}.`;
    $("file").addEventListener("change", (event) => {
      const file = event.target.files && event.target.files[0];
      if (file) loadImage(file);
    });
    document.addEventListener("dragover", (event) => event.preventDefault());
    document.addEventListener("drop", (event) => {
      event.preventDefault();
      const file = event.dataTransfer.files && event.dataTransfer.files[0];
      if (file) loadImage(file);
    });
    $("download").addEventListener("click", download);
    window.addEventListener("resize", fitCanvases);
    document.body.dataset.state = "ready";
    setStatus("Choose an image (or drop one here) to translate it.");
    session(currentEntry()).catch((err) => fail(`cannot load ${currentEntry().file}: ${describe(err)}`));
  }

  main();
})();
