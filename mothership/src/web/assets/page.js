// What every page needs without inline script or style (the CSP allows
// neither): positions and widths from data attributes, and posters that
// do not exist yet taken out.
(function(){
  document.querySelectorAll('[data-left],[data-width]').forEach(function(el){
    if(el.dataset.left)el.style.left=el.dataset.left+'%';
    if(el.dataset.width)el.style.width=el.dataset.width+'%';
  });
  document.querySelectorAll('img.poster').forEach(function(img){
    function gone(){img.remove();}
    if(img.complete&&img.naturalWidth===0)gone(); else img.addEventListener('error',gone);
  });
})();
