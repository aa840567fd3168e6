// The page's behaviour: send a photo (file or camera snapshot) to POST /api/predict and show the answer.
"use strict";

const $ = (id) => document.getElementById(id);
const status = $("status");
let stream = null; // the open camera, when there is one

function showStatus(text, isError = false) {
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// One horizontal bar per class, longest for the most likely emotion.
function renderBars(container, probabilities, winner) {
  for (const [name, p] of Object.entries(probabilities)) {
    const row = document.createElement("div");
    row.className = "bar-row" + (name === winner ? " winner" : "");
    const label = document.createElement("span");
    label.className = "bar-label";
    label.textContent = name;
    const track = document.createElement("span");
    track.className = "bar-track";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${(p * 100).toFixed(1)}%`;
    track.append(bar);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = `${Math.round(p * 100)}%`;
    row.append(label, track, value);
    container.append(row);
  }
}

function renderResult(result) {
  $("annotated").src = result.annotated;
  const faces = $("faces");
  faces.replaceChildren();
  result.faces.forEach((face, i) => {
    const card = $("face-template").content.firstElementChild.cloneNode(true);
    card.querySelector(".face-title").textContent = face.detected ? `Face ${i + 1}` : "Whole photo (a face crop)";
    card.querySelector(".emotion").textContent = face.emotion;
    card.querySelector(".confidence").textContent = `(${Math.round(face.confidence * 100)}%)`;
    card.querySelector(".message").textContent = face.message;
    renderBars(card.querySelector(".bars"), face.probabilities, face.emotion);
    faces.append(card);
  });
  $("result").hidden = false;
  const n = result.faces.filter((f) => f.detected).length;
  if (result.detection === "whole-image") {
    showStatus(`${result.image}: no face found; the photo is small enough to be a face crop, so it was classified whole.`);
  } else {
    showStatus(n ? `${result.image}: ${n} face${n > 1 ? "s" : ""} found.` : `${result.image}: no face found, so no emotion.`);
  }
}

// Send one image (a File or a Blob) and show either the labelled faces or the server's error sentence.
async function predict(blob, name) {
  const form = new FormData();
  form.append("image", blob, name);
  showStatus(`Analysing ${name}...`);
  $("result").hidden = true;
  try {
    const response = await fetch("/api/predict", { method: "POST", body: form });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      showStatus(`Error: ${body.error || `the server answered ${response.status} ${response.statusText}`}`, true);
      return;
    }
    renderResult(body);
  } catch (error) {
    showStatus(`Error: could not reach the server (${error.message}); is it still running?`, true);
  }
}

$("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) predict(file, file.name);
  event.target.value = ""; // choosing the same file again still triggers a new prediction
});

// Camera: getUserMedia -> <video> -> canvas -> PNG blob -> the same API as an upload.
async function openCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showStatus("Error: this browser gives no camera access here (it needs https or localhost).", true);
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    showStatus(`Error: cannot open the camera (${error.name}); allow camera access or upload a photo instead.`, true);
    return;
  }
  $("camera-video").srcObject = stream;
  $("camera").hidden = false;
  showStatus("Camera on: press Snap.");
}

function closeCamera() {
  if (stream) stream.getTracks().forEach((track) => track.stop());
  stream = null;
  $("camera").hidden = true;
}

function snap() {
  const video = $("camera-video");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  closeCamera();
  canvas.toBlob((blob) => predict(blob, "camera.png"), "image/png");
}

$("camera-open").addEventListener("click", openCamera);
$("camera-close").addEventListener("click", () => { closeCamera(); showStatus(""); });
$("camera-snap").addEventListener("click", snap);
