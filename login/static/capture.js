// Capture a burst of camera frames and post them with a server-issued nonce. The server decides.
(function () {
  "use strict";
  const form = document.getElementById("capture");
  const video = document.getElementById("video");
  const status = document.getElementById("status");
  const button = document.getElementById("start");
  const mode = form.dataset.mode;
  const frames = parseInt(form.dataset.frames, 10);
  const intervalMs = 100;  // 10 frames a second: 1 s for a login, 4 s for an enrolment
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  function say(text, kind) { status.textContent = text; status.className = kind || ""; }

  navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false })
    .then(function (stream) { video.srcObject = stream; say("Camera ready."); })
    .catch(function () { say("The camera could not be opened. Allow camera access and reload.", "error"); button.disabled = true; });

  function grab(canvas) {
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    return new Promise(function (resolve) { canvas.toBlob(resolve, "image/jpeg", 0.9); });
  }

  async function post(url, body) {
    const r = await fetch(url, { method: "POST", body: body, headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" });
    return r.json();
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    button.disabled = true;
    try {
      const username = document.getElementById("username").value;
      const ask = new FormData(); ask.append("purpose", mode); ask.append("username", username);
      const nonce = await post("/api/nonce", ask);
      if (!nonce.ok) { say(nonce.message, "error"); return; }
      say(mode === "enrol" ? "Capturing... keep looking at the camera." : "Capturing...");
      const canvas = document.createElement("canvas");
      canvas.width = video.videoWidth || 640; canvas.height = video.videoHeight || 480;
      const data = new FormData();
      data.append("username", username); data.append("nonce", nonce.nonce);
      data.append("password", document.getElementById("password").value);
      for (let i = 0; i < frames; i++) {
        data.append("frames", await grab(canvas), "frame" + i + ".jpg");
        await new Promise(function (r) { setTimeout(r, intervalMs); });
      }
      say("Checking...");
      const result = await post("/api/" + mode, data);
      say(result.ok ? (mode === "enrol" ? "Enrolled. You can log in now." : "Logged in.") : result.message,
          result.ok ? "ok" : "error");
      if (result.ok && result.redirect) { window.location.assign(result.redirect); }
    } catch (e) {
      say("Something went wrong. Try again.", "error");
    } finally {
      button.disabled = false;
    }
  });
})();
